"""The ``napari-sam`` command line: argparse only, one module per subcommand, one option
table (:mod:`napari_sam.cli.options`); the work is in :mod:`napari_sam.batch`.

TensorFlow is imported only inside the commands, so ``napari-sam --help`` stays fast.
"""

from .entry import CLIError, build_parser, main, parse_channels, parse_normalization

__all__ = ["CLIError", "build_parser", "main", "parse_channels", "parse_normalization"]
