"""`python -m simulator.csms --port 9000`: the CSMS without Django (benchmarks run it apart)."""

import sys

from .run import main

sys.exit(main())
