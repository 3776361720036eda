"""Domain logic in plain Python: no Ray, no database, no I/O. Actors wrap these classes."""
