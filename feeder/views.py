"""A feeder of several independently augmented views of each sample: the two views of contrastive tuning
(main_tune.py)."""
import numpy as np

from feeder.feeder_ntu import Feeder


class ViewsFeeder(Feeder):
    """feeder_ntu.Feeder whose items hold `views` views of the sample: (data (views, 3, window, 25, 2), label, index).

    Each view is cropped, resized and rotated as the feeder's training items are, from its own draws, made one
    after the other: under util.data.SeededItems the views depend on (seed, epoch, sample) only, and view 0 is
    the item a one-view feeder gives with the same seed. views=1 gives the items of feeder_ntu.Feeder (e.g. for
    the val_feeder_args of the same config). The views need a fixed window_size, and no batch_augment.
    """

    def __init__(self, *args, views=1, **kwargs):
        super().__init__(*args, **kwargs)
        if views < 1:
            raise ValueError(f"views must be at least 1, got {views}")
        if views > 1 and (self.window_size <= 0 or self.batch_augment):
            raise ValueError(f"views={views} needs a window_size (the views are stacked) and no --gpu_aug "
                             f"(batch_augment), got window_size={self.window_size}")
        self.views = views

    def drawn(self, index):
        """The draws of each view in turn (a list of the feeder's draws), or the feeder's draws for one view."""
        if self.views == 1:
            return super().drawn(index)
        return [super(ViewsFeeder, self).drawn(index) for _ in range(self.views)]

    def item(self, index, drawn):
        if self.views == 1:
            return super().item(index, drawn)
        return np.stack([Feeder.item(self, index, d)[0] for d in drawn]), int(self.label[index]), index

    def items(self, indices, drawn):
        """The items of samples `indices`: each view of all of them as the feeder's batched items, then stacked."""
        if self.views == 1:
            return super().items(indices, drawn)
        per_view = [Feeder.items(self, indices, [d[v] for d in drawn]) for v in range(self.views)]
        return [(np.stack([view[j][0] for view in per_view]), label, index)
                for j, (_, label, index) in enumerate(per_view[0])]
