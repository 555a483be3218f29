"""From reference modules to checked graphs: ONNX export and validation, fp16/int8 versions, TensorRT's parser
rules, and the allow-list unpickler that reads checkpoints."""
