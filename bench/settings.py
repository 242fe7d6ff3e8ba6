"""The benchmark's sections, precisions, model and data sizes (published full size and --quick) and the
published training settings it times."""
import torch

SECTIONS = ('matmul', 'pretrain', 'tune', 'linprobe', 'finetune', 'eval', 'feeder', 'augment', 'dense')
AMP = {'fp32': None, 'bf16': torch.bfloat16, 'fp16': torch.float16}

FULL = dict(dim_feat=256, depth=8, num_heads=8, mlp_ratio=4, num_frames=120, num_joints=25, patch_size=1,
            t_patch_size=4, num_classes=60, hidden_dim=2048, mask_ratio=0.9, bodies=2, dim_in=3,
            feeder_frames=300, matmul_size=2048, proj_hidden_dim=2048, proj_dim=256, pred_hidden_dim=4096,
            queue_size=8192)
QUICK = dict(FULL, dim_feat=32, depth=2, num_heads=2, num_frames=24, num_classes=10, feeder_frames=60,
             matmul_size=256, proj_hidden_dim=64, proj_dim=16, pred_hidden_dim=64, queue_size=64)
PRETRAIN_CALL = dict(motion_stride=1, motion_aware_tau=0.8)  # published MAMP settings; mask_ratio from the size
TUNE_TEMPERATURE = 0.07  # STARS', as config/*/tune.yaml (whose heads and queue are FULL's)
FINETUNE_DROP_PATH = 0.3
CROP = (0.5, 1.0)  # the training feeder's crop ratio interval
