import sys

from raymall.launcher.cli import main

sys.exit(main())
