import sys

from xdnsd.cli import main

sys.exit(main())
