"""Register a new dataset of three small FITS files at PIC-DISK only, and print its DID.

The UI tests make it available near compute (CERN) on every run, so they always watch a
real transfer even though the test lake is kept between runs. Run with the project's
Python and ``ESCAPE_PORTAL_LAKE_DIR`` pointing at the embedded lake; ``--corrupt`` makes
the first file's bytes disagree with its checksum. Registered by the operator (instance
``embedded``, as an upload daemon would); the UI, as researcher alice, then moves it.
"""

import sys

from escape_portal.embedded.fresh import fresh_dataset
from escape_portal.lake import Lake

if __name__ == "__main__":
    print(
        fresh_dataset(
            Lake.from_instance("embedded"), prefix="ui", corrupt_first="--corrupt" in sys.argv
        )
    )
