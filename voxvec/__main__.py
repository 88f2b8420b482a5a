"""``python -m voxvec`` runs the command line."""

import sys

from voxvec.cli import main

sys.exit(main())
