"""What is inside a .tflite: its operators, and whether the edge runtime can run all of them."""

from __future__ import annotations

from edge.errors import BundleError


def op_names(tflite: bytes) -> list[str]:
    """Operator names of the model, one per operator code (builtin names, or the custom op's name)."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(tflite))
    out = []
    for code in model.operatorCodes:
        builtin = max(code.builtinCode, code.deprecatedBuiltinCode)  # the schema keeps both fields
        custom = code.customCode.decode() if isinstance(code.customCode, bytes) else code.customCode
        out.append(custom if names.get(builtin) == "CUSTOM" and custom else names.get(builtin, str(builtin)))
    return out


def check_builtin_only(ops: list[str]) -> None:
    """Flex (SELECT_TF_OPS) and custom ops need TensorFlow on the device: refuse them, naming them."""
    foreign = sorted({op for op in ops if op.startswith("Flex") or not op.isupper()})
    if foreign:
        raise BundleError(
            f"the converted model needs ops the edge runtime lacks: {', '.join(foreign)}; "
            "change the architecture so it converts to TFLite builtin ops only"
        )
