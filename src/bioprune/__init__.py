"""bioprune: self-influence data pruning for biological foundation models.

Stages (each a module with one public function, and a CLI command):
prepare -> init -> adapt -> fisher -> score -> select -> pretrain -> evaluate.
"""

__version__ = "0.1.0"
