"""The reframe-blender subcommands, grouped by job; bpy is imported only inside commands that render."""

PRECISION_CHOICES = ("fp32", "fp16", "bf16", "mixed")  # runtime.placement.PRECISIONS, without importing torch
PRECISION_HELP = ("number format of the network: mixed (default) is float32 with the SS resolve's layers in bfloat16 "
                  "where the processor has bf16 arithmetic (AVX512-BF16, AMX, recent GPUs; elsewhere all float32); "
                  "fp32 everywhere; fp16 or bf16 everywhere")
