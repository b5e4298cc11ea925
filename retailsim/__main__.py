import sys

from retailsim.cli import main

sys.exit(main())
