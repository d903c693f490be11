"""`python -m sqlctl` entry point."""

from sqlctl.main import main

main()
