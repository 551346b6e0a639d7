"""Matching anchors to ground truth, and balanced sampling (chapter 04).

``Matcher`` gives each anchor (or proposal) the index of the ground-truth box it overlaps
most, or a negative sentinel, by torchvision's rule (``models/detection/_utils.py``):

1. For each anchor take the best GT: ``max`` over the G rows of the ``[G, A]`` IoU matrix
   (ties: the lowest GT index, as ``argmax``).
2. Best IoU ``< low_threshold`` -> ``BELOW_LOW_THRESHOLD`` (-1, a negative);
   ``low_threshold <= IoU < high_threshold`` -> ``BETWEEN_THRESHOLDS`` (-2, ignored).
3. With ``allow_low_quality_matches``: for each GT, every anchor whose IoU with it equals
   that GT's best IoU (ties included, even when that IoU is low) gets back the match from
   step 1 -- its own best GT, which need not be this GT. So no GT is left without an anchor
   unless it overlaps no anchor at all (best IoU 0 still counts: all its zero-IoU anchors
   are restored; torchvision does the same).

``BalancedPositiveNegativeSampler`` then draws at most ``batch_size_per_image`` anchors per
image, at most ``positive_fraction`` of them positive, filling the rest with negatives.

No gradient: matches and samples are integer choices, constants for the losses.
"""
import numpy as np


class Matcher:
    """Assign each prediction a GT index or a sentinel (torchvision's ``Matcher``).

    Args:
        high_threshold: IoU ``>=`` this is a match (RPN: 0.7, Faster R-CNN paper, Sec. 3.1.2).
        low_threshold: IoU ``<`` this is a negative (RPN: 0.3); between is ignored.
        allow_low_quality_matches: also match each GT's best anchors (RPN: True).
    """

    BELOW_LOW_THRESHOLD = -1
    BETWEEN_THRESHOLDS = -2

    def __init__(self, high_threshold, low_threshold, allow_low_quality_matches=False):
        if low_threshold > high_threshold:
            raise ValueError("low_threshold should be <= high_threshold")
        self.high_threshold = high_threshold
        self.low_threshold = low_threshold
        self.allow_low_quality_matches = allow_low_quality_matches

    def __call__(self, match_quality_matrix):
        """
        Args:
            match_quality_matrix: ``[G, A]`` quality (IoU) of each GT with each prediction.
        Returns:
            matched_idxs: ``[A]`` int64, a GT index in ``[0, G)``, or ``BELOW_LOW_THRESHOLD``
            (-1), or ``BETWEEN_THRESHOLDS`` (-2). With ``G = 0`` every prediction is
            ``BELOW_LOW_THRESHOLD`` (torchvision raises in that case; an image with no
            objects is all background, so we say so instead).
        """
        q = np.asarray(match_quality_matrix)                   # [G, A]
        num_gt, num_pred = q.shape
        if num_gt == 0 or num_pred == 0:
            return np.full(num_pred, self.BELOW_LOW_THRESHOLD, dtype=np.int64)  # [A]
        matches = np.argmax(q, axis=0).astype(np.int64)        # [A] best GT (first on ties)
        matched_vals = q[matches, np.arange(num_pred)]          # [A] its IoU
        all_matches = matches.copy() if self.allow_low_quality_matches else None

        below_low_threshold = matched_vals < self.low_threshold                    # [A]
        between_thresholds = ((matched_vals >= self.low_threshold)
                              & (matched_vals < self.high_threshold))              # [A]
        matches[below_low_threshold] = self.BELOW_LOW_THRESHOLD
        matches[between_thresholds] = self.BETWEEN_THRESHOLDS

        if self.allow_low_quality_matches:
            self.set_low_quality_matches_(matches, all_matches, q)
        return matches

    @staticmethod
    def set_low_quality_matches_(matches, all_matches, match_quality_matrix):
        """In place: restore ``all_matches`` for every prediction that is (one of) the best
        for some GT. ``matches [A]``, ``all_matches [A]``, ``match_quality_matrix [G, A]``."""
        highest_quality_foreach_gt = match_quality_matrix.max(axis=1)            # [G]
        is_best = match_quality_matrix == highest_quality_foreach_gt[:, None]    # [G, A] ties
        pred_inds_to_update = np.nonzero(is_best)[1]                             # [#pairs]
        matches[pred_inds_to_update] = all_matches[pred_inds_to_update]


class BalancedPositiveNegativeSampler:
    """Sample a fixed-size, class-balanced subset of anchors per image.

    Args:
        batch_size_per_image: anchors kept per image (RPN: 256, Faster R-CNN paper, Sec. 3.1.3).
        positive_fraction: at most this fraction positive (RPN: 0.5); negatives fill the rest.
    """

    def __init__(self, batch_size_per_image, positive_fraction):
        self.batch_size_per_image = batch_size_per_image
        self.positive_fraction = positive_fraction

    def __call__(self, labels_list, rng):
        """
        Args:
            labels_list: one ``[A_i]`` integer array per image: ``>= 1`` positive, ``0``
                negative, ``-1`` ignored.
            rng: a ``numpy.random.Generator``; the only source of randomness.
        Returns:
            pos_masks, neg_masks: lists of ``[A_i]`` bool arrays, the sampled positives and
            negatives. ``num_pos = min(#positives, int(batch * fraction))`` and
            ``num_neg = min(#negatives, batch - num_pos)``, drawn uniformly without replacement.
        """
        pos_masks, neg_masks = [], []
        for labels in labels_list:
            labels = np.asarray(labels)
            positive = np.nonzero(labels >= 1)[0]              # [#pos]
            negative = np.nonzero(labels == 0)[0]              # [#neg]
            num_pos = int(self.batch_size_per_image * self.positive_fraction)
            num_pos = min(positive.size, num_pos)              # not enough positives: fewer
            num_neg = self.batch_size_per_image - num_pos      # negatives fill the batch
            num_neg = min(negative.size, num_neg)
            pos_idx = positive[rng.permutation(positive.size)[:num_pos]]  # [num_pos]
            neg_idx = negative[rng.permutation(negative.size)[:num_neg]]  # [num_neg]
            pos_mask = np.zeros(labels.shape, dtype=bool)
            neg_mask = np.zeros(labels.shape, dtype=bool)
            pos_mask[pos_idx] = True
            neg_mask[neg_idx] = True
            pos_masks.append(pos_mask)
            neg_masks.append(neg_mask)
        return pos_masks, neg_masks
