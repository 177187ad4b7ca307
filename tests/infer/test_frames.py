"""infer/frames.py: the references Θ gets, its per-frame inputs against the training pipeline's,
and batched Θ against one unbatched call of the training task's own forward."""

import types

import jax
import numpy as np
import pytest

import generate_testdata as testdata
from talkinghead_jax import config as config_lib
from talkinghead_jax.data import input_common, input_generator, input_synthetic, schema
from talkinghead_jax.errors import ConfigError, InputError
from talkinghead_jax.infer import checkpoint_set, frames
from talkinghead_jax.train import tasks

# XLA options that make a one-off CPU compile several times faster (as tests/train's).
FAST_COMPILE = {"xla_cpu_use_fusion_emitters": False, "xla_backend_optimization_level": 0,
                "xla_llvm_disable_expensive_passes": True}


def test_references_are_spread_over_the_usable_frames():
  valid = np.ones(20, bool)
  valid[[0, 1, 2, 9]] = False  # 16 usable frames: 3 … 8, 10 … 19
  usable = np.flatnonzero(valid)
  chosen = frames.choose_references(valid, 4)
  # Segment centres of 4 equal parts of the 16 usable frames: usable[2], [6], [10], [14].
  np.testing.assert_array_equal(chosen, usable[[2, 6, 10, 14]])
  assert valid[chosen].all() and len(set(chosen)) == 4
  # As many as usable frames: every one, in order.
  np.testing.assert_array_equal(frames.choose_references(valid, 16), usable)
  with pytest.raises(InputError, match=r"ref\.mp4: only 16 usable frames .*; 17 references need at least 17"):
    frames.choose_references(valid, 17, "ref.mp4")
  with pytest.raises(ConfigError):
    frames.choose_references(valid, 0)


def _training_sampler(size: int, k: int, clip: dict) -> input_generator.GeneratorSampler:
  config = config_lib.load("configs/generator.py:synthtalk_tiny", [f"data.image_size={size}",
                                                                   f"data.num_references={k}"])
  artifacts = input_common.DatasetArtifacts(canonical=input_synthetic.canonical_face(size), pca=None,
                                            info={"size": size}, features=frozenset(clip))
  return input_generator.GeneratorSampler(config, artifacts, split="test")


def test_per_frame_inputs_equal_the_training_pipelines():
  """Θ's batch for each output frame is the sample the test-split pipeline makes from a clip
  whose references are the reference's frames and whose target is the motion's frame."""
  size, k = 32, 3
  reference_clip = input_synthetic.make_clip(0, frames=12, size=size, audio_rates=(), synthtalk=False)
  driving_clip = input_synthetic.make_clip(1, frames=5, size=size, audio_rates=(), synthtalk=False, max_yaw=0.5)
  reference = testdata.reference_of(reference_clip)
  refs = frames.ReferenceInputs(reference, k)
  per_frame = frames.frame_inputs(refs, driving_clip["landmarks"], driving_clip["pose"])
  # The two clips as one: reference frames first, then the targets (whose images Θ never sees).
  joined = {name: np.concatenate([reference_clip[name], driving_clip[name]])
            for name in ("frames", "landmarks", "pose", "front")}
  joined.update(key_frame=reference_clip["key_frame"], num_frames=np.int32(len(joined["pose"])))
  sampler = _training_sampler(size, k, joined)
  for t in range(5):
    expected = sampler.sample_frames(joined, refs.indices, 12 + t, np.random.default_rng(0))
    one = {name: value[t:t + 1] for name, value in per_frame.items()}
    batch = jax.device_get(frames.assemble_batch(refs.constants(), one))
    for name in (schema.REF_IMAGE, schema.REF_LABEL, schema.REF_POSE, schema.TGT_LABEL, schema.TGT_POSE,
                 schema.WARPING_REF, schema.WARPING_REF_LABEL, schema.KEY_IMAGE, schema.KEY_FRONT, schema.KEY_POSE,
                 schema.MOUTH_BOX, schema.RENDERED_LABEL):
      np.testing.assert_allclose(batch[name][0], expected[name], atol=1e-5, err_msg=f"{name}, frame {t}")
    assert batch[schema.TGT_LABEL][0].sum() > 50 and batch[schema.MOUTH_BOX][0].sum() > 4  # not empty
  # A target posed as reference i is matched with reference i.
  own = frames.frame_inputs(refs, reference.landmarks[refs.indices], reference.pose[refs.indices])
  np.testing.assert_array_equal(own[frames.MATCH], np.arange(k))


def test_another_k_only_where_the_weights_fit():
  checkpoints = testdata.checkpoints()
  assert frames.check_references(checkpoints, None) == checkpoints.num_references == 2
  # With attention, Θ's weights depend on K: K = 1 has no attention generator, K = 3 wider convs.
  with pytest.raises(ConfigError, match=r"--k 1: this Θ was trained with K = 2 .*atten_gen"):
    frames.check_references(checkpoints, 1)
  with pytest.raises(ConfigError, match=r"--k 3: .*is \(3, 3, 32, 16\), the config builds \(3, 3, 48, 16\)\)$"):
    frames.check_references(checkpoints, 3)
  # Without attention the encoder averages over the references: any K fits the same weights.
  config = config_lib.load("configs/generator.py:synthtalk_tiny,no_attention",
                           [*testdata.TINY_OVERRIDES["generator"], "model.use_3d=false"])
  task = tasks.get_task(config)
  abstract = jax.eval_shape(task.generator.init, jax.random.key(0), task._dummy_inputs()[0])  # noqa: SLF001
  theta = checkpoint_set.StageWeights(config=config, task=task, variables=abstract, step=0)
  loose = types.SimpleNamespace(num_references=2, generator=theta, path=None)
  assert frames.check_references(loose, 5) == 5


def test_batched_generator_equals_one_unbatched_call_of_the_training_task():
  """Batches of 4 with the last padded, the key frame's map computed once and handed in with the
  batch, against the training task itself on one frame: its unprojection net run inside
  `prepare`, then Θ in eval mode."""
  checkpoints = testdata.checkpoints()
  size = checkpoints.image_size
  reference_clip = input_synthetic.make_clip(2, frames=10, size=size, audio_rates=(), synthtalk=False)
  driving_clip = input_synthetic.make_clip(3, frames=6, size=size, audio_rates=(), synthtalk=False)
  reference, motion = testdata.reference_of(reference_clip), testdata.motion_of(driving_clip)
  timings, done = {}, []
  batches = list(frames.synthesize_frames(reference, motion, checkpoints, batch_size=4, timings=timings,
                                          progress=done.append))
  assert [b.shape for b in batches] == [(4, size, size, 3), (2, size, size, 3)] and done == [4, 2]
  assert timings["render"] > 0 and timings["generator"] > 0
  video = np.concatenate(batches)
  assert video.dtype == np.uint8 and video.std() > 1  # not a constant image

  task = checkpoints.generator.task  # the training task: position_source "unprojection"
  assert task.position_source == "unprojection"
  refs = frames.ReferenceInputs(reference, checkpoints.num_references)
  collections = {"unprojection": checkpoints.unprojection.variables}
  theta = checkpoints.generator.variables
  t = 5  # the padded batch's last real frame
  one = {name: value[t:t + 1] for name, value in frames.frame_inputs(refs, motion.landmarks, motion.pose).items()}

  def unbatched(batch):
    inputs, _ = task.prepare(batch, collections)
    out, _ = task.generate(theta["params"], {n: v for n, v in theta.items() if n != "params"}, inputs, train=False)
    return frames.to_uint8(out["image"])

  batch = frames.assemble_batch(refs.constants(), one)
  # XLA's quick compile (test speed only): the reference need not be the optimised program.
  expected = np.asarray(jax.jit(unbatched).lower(batch).compile(compiler_options=FAST_COMPILE)(batch))[0]
  difference = np.abs(video[t].astype(int) - expected.astype(int))
  assert difference.max() <= 1, difference.max()  # float rounding at most one grey level
