"""The special token ids every part of the package agrees on.

The tokenizers (`keras_transformer_layers.data`) write these ids and the
generators read them, so both import them from here; this module imports
nothing, so generation never loads the data pipeline (TensorFlow, TFDS).

=====  ===========  =================================================
id     token        meaning
=====  ===========  =================================================
0      `""`         padding (`PADDING_ID`); `Embedding(mask_zero=True)`
1      `"[UNK]"`    out of vocabulary (`OOV_ID`)
2      `"[START]"`  start of sequence (`START_ID`)
3      `"[END]"`    end of sequence (`END_ID`)
=====  ===========  =================================================
"""

PADDING_ID = 0
OOV_ID = 1
START_ID = 2
END_ID = 3
