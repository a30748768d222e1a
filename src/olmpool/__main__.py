import sys

from olmpool.cli import main

sys.exit(main())
