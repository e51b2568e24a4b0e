"""``medseg serve``: MONAI Label's REST protocol over our models, for its Slicer module and its Python client."""
