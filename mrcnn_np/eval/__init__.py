"""Evaluation: COCO AP with pycocotools (coco_eval.py) and written out from scratch (ap.py).

    predictions_to_coco_results(predictions, image_ids, label_to_cat_id) -> COCO results
    coco_evaluate(coco_gt, results)        -> {"bbox": {"AP": ...}, "segm": {...}} (pycocotools)
    coco_average_precision(coco_gt, results, "segm") -> the same AP numbers, from scratch
"""
from .coco_eval import (STAT_NAMES, coco_evaluate, encode_mask, format_table,
                        predictions_to_coco_results, save_json)
from .ap import coco_average_precision

__all__ = ["STAT_NAMES", "coco_evaluate", "encode_mask", "format_table",
           "predictions_to_coco_results", "save_json", "coco_average_precision"]
