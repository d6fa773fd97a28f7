"""Automatic segmentation: the mask generator, its helpers, slice linking, the stack driver
and partial results kept while a stack is segmented."""
