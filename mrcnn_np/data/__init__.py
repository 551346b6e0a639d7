"""Data: the synthetic shapes data set (written as COCO) and a COCO loader.

    make_shapes_dataset(out_dir, ...)  -> paths of a COCO data set on disk   (shapes.py)
    CocoDataset(image_dir, ann_file)   -> images and targets as NumPy arrays (coco.py)
"""
from .shapes import make_shapes_dataset, make_shapes_image, SHAPES, DEFAULT_SHAPES
from .coco import CocoDataset, DataError, check_images, load_coco, load_image

__all__ = ["make_shapes_dataset", "make_shapes_image", "SHAPES", "DEFAULT_SHAPES",
           "CocoDataset", "DataError", "check_images", "load_coco", "load_image"]
