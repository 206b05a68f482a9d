"""`python -m onnxstudy ...`: the command line (see onnxstudy.cli)."""

import sys

from onnxstudy.cli import main

sys.exit(main())
