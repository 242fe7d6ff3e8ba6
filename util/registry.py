"""The classes a config, a checkpoint or an exported model may name: the only way a class name read from a
file becomes a class.

A config's `model: model_mamp.MAMP` or a checkpoint's stored settings (`args.feeder`) are data, not code:
a name outside these tables (e.g. `subprocess.run`, `torch.hub.load`) is refused before anything is
imported or called. To use a model or feeder of your own, add its `module.Class` name here, in code:

    MODELS['model_mine.MyNet'] = 'my network'

A file can never extend the tables.
"""
import importlib

MODELS = {
    'model_mamp.MAMP': 'masked motion prediction pre-training (and the MAE baseline)',
    'model_transformer.SkeletonTransformer': 'action classifier of the linear probe and fine-tuning',
    'model_tune.NNCLR': 'contrastive tuning of a pre-trained encoder (nearest-neighbour InfoNCE, main_tune.py)',
    'model_detect.FrameDetector': 'frame-wise action detector of untrimmed recordings (main_detect.py)',
}
FEEDERS = {
    'feeder.feeder_ntu.Feeder': 'NTU RGB+D / PKU-MMD sequences in the preprocessed .npz layout',
    'feeder.views.ViewsFeeder': 'several independently augmented views of each sequence (main_tune.py)',
    'feeder.untrimmed.UntrimmedFeeder': 'training windows of untrimmed PKU-MMD-format recordings (main_detect.py)',
}
TABLES = {'model': ('MODELS', MODELS), 'feeder': ('FEEDERS', FEEDERS)}


def resolve(kind, name, where):
    """The registered class `name` ('module.Class') of `kind` ('model' or 'feeder').

    Raises a one-line ValueError naming `where` (the file and key the name comes from), what was asked for and
    what is allowed, without importing anything, for a name that is not registered.
    """
    table_name, table = TABLES[kind]
    if not isinstance(name, str) or name not in table:
        raise ValueError(f"{where}: refused {kind} {name!r}: not a registered {kind} class (allowed: "
                         f"{', '.join(table)}; a class of your own is added to {table_name} in util/registry.py)")
    module, _, attr = name.rpartition('.')
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"{where}: cannot import the registered {kind} {name} ({e})") from None
