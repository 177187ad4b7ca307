"""Inference: speech + a reference video → a talking-head video (`talkinghead generate`, `demo`).

One module per step (DESIGN.md §3 "infer/"):
  checkpoint_set  the four trained stages and the data set facts they share, as one directory
                  (`talkinghead export` makes it, `load_checkpoint_set` reads and checks it);
  reference       the reference video prepared as the data sets are (crop, landmarks, pose, key
                  frame) at Θ's size;
  motion          Ψ and Φ: frontal expressive landmarks and head poses per output frame, from
                  audio (or from a driving video);
  frames          Θ with the 3D-aware image and K references, frame batch by frame batch;
  pipeline        `generate`, the whole chain, and its command (`command`).

Nothing here imports TensorFlow on the generate path (GPU machines have none); `export` reads the
prepared data set and so needs it. Modules are imported on use: `import talkinghead_jax.infer`
stays cheap.
"""
