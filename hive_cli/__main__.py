"""``python -m hive_cli`` is the same as ``amplihack-hive``."""

from hive_cli.app import main

main()
