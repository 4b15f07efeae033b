"""``python -m era_vision_app``: the ``era-vision-train`` command (the form ``torchrun -m`` runs).

``torchrun --nproc-per-node N -m era_vision_app --out DIR ...`` trains with N processes.
"""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
