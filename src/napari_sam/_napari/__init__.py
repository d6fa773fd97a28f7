"""The napari plugin of napari-sam (the only part of the package that imports napari or Qt).

``annotator`` (the annotation state and operations) and ``_session`` (layer geometry, prompts,
the stack predictor session) import neither napari nor Qt; ``_widget`` is the thin dock widget
on an annotator (``_controls`` its Qt pieces), ``_everything`` its Qt-free "Segment everything"
(per-slice automatic segmentation linked in 3-D), ``_sample`` the sample data and ``_commands``
the manifest commands.
"""
