import sys

from scnf.cli import main

sys.exit(main())
