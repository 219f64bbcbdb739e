"""UNets from segmentation-models-pytorch, always randomly initialised
(``encoder_weights=None``: pretrained weights come from an external hub)."""
from torch import nn

from .registry import ModelSpec, register


@register(ModelSpec("smp_unet", "segmentation", 3, None, 2, min_input_size=32, size_multiple=32,
                   description="segmentation-models-pytorch Unet (random init); "
                               "height and width must be multiples of 32"))
def smp_unet(encoder_name: str = "resnet18", in_channels: int = 3, num_classes: int = 2,
             **kwargs) -> nn.Module:
    import segmentation_models_pytorch as smp

    if kwargs.pop("encoder_weights", None) is not None:
        raise ValueError("smp_unet: encoder_weights must be None (pretrained weights are not used)")
    return smp.Unet(encoder_name=encoder_name, encoder_weights=None, in_channels=in_channels,
                    classes=num_classes, **kwargs)
