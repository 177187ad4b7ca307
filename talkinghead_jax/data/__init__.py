"""Data: SynthTalk (the procedural data set), landmark detectors, preprocessing, input pipelines.

Import the submodules you need; this package imports nothing itself (TensorFlow in particular
is loaded only by the modules that build tfds data sets).

SynthTalk: `synthetic` (the generator and its writer), `synthtalk_head` (surface, rig,
landmarks), `synthtalk_appearance` (textures, backgrounds, light), `synthtalk_speech` (audio and
mouth), `synthtalk_motion` (head motion and blinks), `synthtalk_command` (`talkinghead synth`).
"""
