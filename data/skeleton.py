"""The 25-joint Kinect v2 skeleton of NTU RGB+D and PKU-MMD (0-based joint indices, file order)."""

JOINT_NAMES = (
    "spine_base", "spine_mid", "neck", "head",
    "shoulder_left", "elbow_left", "wrist_left", "hand_left",
    "shoulder_right", "elbow_right", "wrist_right", "hand_right",
    "hip_left", "knee_left", "ankle_left", "foot_left",
    "hip_right", "knee_right", "ankle_right", "foot_right",
    "spine_shoulder", "handtip_left", "thumb_left", "handtip_right", "thumb_right",
)
NUM_JOINTS = len(JOINT_NAMES)

# PARENTS[j] is the joint that bone j hangs from: the NTU bone pairs of the published bone modality.
# The tree is rooted at spine_shoulder (20), its own parent, so its bone is zero. The hand tips hang
# from the thumbs, which hang from the hands.
PARENTS = (1, 20, 20, 2, 20, 4, 5, 6, 20, 8, 9, 10, 0, 12, 13, 14, 0, 16, 17, 18, 20, 22, 7, 24, 11)
ROOT = 20
