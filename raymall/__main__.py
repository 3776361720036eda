import sys

from raymall.cli import main

sys.exit(main())
