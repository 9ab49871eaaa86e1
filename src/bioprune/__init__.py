"""bioprune: self-influence data pruning for biological foundation models.

Stages (each a module with one public function, and a CLI command):
prepare -> init -> adapt -> fisher -> score -> select -> pretrain -> evaluate.
"""

import logging

__version__ = "0.1.0"

# The library logs through one ``bioprune`` logger and never configures
# logging itself: without this, Python's last-resort handler would print its
# warnings on stderr. The CLI installs its own handler (bioprune.cli.progress).
logging.getLogger("bioprune").addHandler(logging.NullHandler())
