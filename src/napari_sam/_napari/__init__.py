"""The napari plugin of napari-sam (the only part of the package that imports napari or Qt).

``_session`` holds the GUI-free logic (layer geometry, prompts, preview, propagation) and imports
neither napari nor Qt; ``_widget`` is the dock widget, ``_sample`` the sample data and
``_commands`` the manifest commands.
"""
