"""The paper's published numbers (Tables 1-4, DeepCompression as quoted) and the notes printed under each table."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PaperRow:
    label: str
    metric: float  # in the table's display unit (% for top-1/dice, raw FID)
    rate_text: str  # verbatim (LaTeX removed)
    rate: float  # the "(N×)" factor
    params_text: str  # verbatim
    params: int  # the number as printed ("266K" -> 266,000)
    fp16: bool = False  # the paper lists this row's parameters as float16
    ref: bool = False  # dense reference row: the paper's count includes biases / norm params
    fp16_of: str | None = None  # row that is this row stored as float16 (AlexNet-v4 = v3 in float16)


@dataclass(frozen=True)
class PaperTable:
    number: int
    caption: str
    metric_label: str  # the paper's column name
    metric_unit: str  # "%" or ""
    rows: tuple[PaperRow, ...]
    metric: str = "top1"  # the records' metric name ("top1", "dice", "fid")
    metric_text: str = "top-1 accuracy in %"  # how the notes name it
    higher_is_better: bool = True
    decimals: int = 2  # of the metric in the tables
    notes: tuple[str, ...] = ()  # printed under the table, after the notes every table has
    columns: tuple[str, ...] = ()  # further columns of every line (columns.COLUMNS), each with its note


def _r(label, metric, rate_text, rate, params_text, params, **kw):
    return PaperRow(label, metric, rate_text, rate, params_text, params, **kw)


_LENET_RATES = ("Paper arithmetic: the LeNet5 rates use the weight count (430,500 / (776 / 2) = 1,109.5, "
                "printed 1110×); the LeNet300 rates match neither count (266,200 / (4,238 / 2) = 125.6× "
                "against the printed 114×; 266,200 / (2,816 / 2) = 189.1× against 188×).")
_DEEPCOMPRESSION_QUOTED = ("DeepCompression [11] numbers are quoted from the paper, not re-run; frx's own baseline is "
                           "per-layer magnitude pruning at the same kept count per tensor as each FR row (section "
                           "below).")
_VGG_CONFIG = ("The paper's 'VGG16' is the 19-layer configuration (VGG-19 with BN, one Linear(512, 10): "
               "20,040,522 parameters, as the paper's count and per-layer table); the Model column says "
               "which network a row used: 'vgg16 (vgg19-config)' is the paper's, 'vgg16_true' the "
               "16-layer one. AlexNet-v4 is AlexNet-v3 stored as float16.")
_TOTAL_RATES = ("Paper arithmetic: this table's published rates equal the -ref row's total parameter count "
                "(biases and norm parameters included) / kept count (x 2 on float16 rows), truncated: "
                "AlexNet-v4 57,044,810 / 704 = 81,029×. Our rate columns divide dense weights only "
                "(57,035,456 / 704 = 81,016×), so Δ rate includes that difference.")
_FID_FEATURES = ("FID depends on the feature extractor: 'FID features' names the one each row used. The paper "
                 "does not say which it used, so FID values are comparable only within this table's runs: Δ FID "
                 "against the paper's values is n/a; compare FR with the reference and with pruning here.")


PAPER: dict[int, PaperTable] = {
    1: PaperTable(1, "The compression between the proposed approach and DeepCompress[11] on MINIST dataset [17].",
                  "Top-1 Accuracy", "%", (
                      _r("LeNet300-ref", 98.15, "100%(1×)", 1, "266K(float32)", 266_000, ref=True),
                      _r("LeNet300-v1", 97.11, "0.88%(114×)", 114, "4238(float16)", 4238, fp16=True),
                      _r("LeNet300-v2", 95.69, "0.53%(188×)", 188, "2816(float16)", 2816, fp16=True),
                      _r("LeNet5-ref", 98.78, "100%(1×)", 1, "431K(float32)", 431_000, ref=True),
                      _r("LeNet5-v1", 98.35, "0.89%(112×)", 112, "7668(float16)", 7668, fp16=True),
                      _r("LeNet5-v2", 97.52, "0.09%(1110×)", 1110, "776(float16)", 776, fp16=True),
                  ), notes=(_LENET_RATES, _DEEPCOMPRESSION_QUOTED)),
    2: PaperTable(2, "The evaluation of the proposed frequency regularization on Alexnet [16], VGG [30] and "
                     "ResNet [12] using CIFAR10 dataset [15].", "Top-1 Accuracy", "%", (
                      _r("AlexNet-ref", 76.45, "100%(1×)", 1, "57,044,810", 57_044_810, ref=True),
                      _r("AlexNet-v1", 77.44, "1%(100×)", 100, "570,365", 570_365),
                      _r("AlexNet-v2", 70.46, "0.1%(1000×)", 1000, "57,364", 57_364),
                      _r("AlexNet-v3", 59.22, "0.00246%(40514×)", 40514, "1,408", 1408),
                      _r("AlexNet-v4", 58.55, "0.00123%(81029×)", 81029, "1,408(float16)", 1408, fp16=True,
                         fp16_of="AlexNet-v3"),
                      _r("VGG16-ref", 85.84, "100%(1×)", 1, "20,040,522", 20_040_522, ref=True),
                      _r("VGG16-v1", 84.77, "1%(100×)", 100, "200,578", 200_578),
                      _r("VGG16-v2", 73.01, "0.1%(1000×)", 1000, "20,302", 20_302),
                      _r("VGG16-v3", 65.99, "0.0102%(9785×)", 9785, "2,048", 2048),
                      _r("ResNet18-ref", 85.43, "100%(1×)", 1, "11,173,962", 11_173_962, ref=True),
                      _r("ResNet18-v1", 85.34, "1%(100×)", 100, "111,901", 111_901),
                      _r("ResNet18-v2", 83.23, "0.1%(1000×)", 1000, "12,058", 12_058),
                      _r("ResNet18-v3", 77.64, "0.024%(4156×)", 4156, "2,688", 2688),
                  ), notes=(_VGG_CONFIG, _TOTAL_RATES), columns=("lossless1k", "wall_time", "ran_on")),
    3: PaperTable(3, "The evaluation of the proposed frequency regularization on UNet for image segmentation "
                     "tasks using Carvana Image Masking Challenge dataset [13].", "Dice Score", "%", (
                      _r("UNet-ref", 99.13, "100%(1×)", 1, "31,043,586", 31_043_586, ref=True),
                      _r("UNet-v1", 99.51, "1%(100×)", 100, "310,960", 310_960),
                      _r("UNet-v2", 99.37, "0.1%(1000×)", 1000, "31,096", 31_096),
                      _r("UNet-v3", 98.86, "0.0047%(21146×)", 21146, "2,936(float16)", 2936, fp16=True),
                  ), metric="dice", metric_text="Dice score in %", notes=(_TOTAL_RATES,)),
    4: PaperTable(4, "The evaluatio of the proposed frequency regularization on generative adversarial network "
                     "(GAN) and variational autoencoder (VAE).", "Fid value", "", (
                      _r("GAN-ref", 244, "100%(1×)", 1, "6,338,176", 6_338_176, ref=True),
                      _r("GAN-fr1", 248, "1.02%(98×)", 98, "64,383", 64_383),
                      _r("VAE-ref", 81, "100%(1×)", 1, "971,200", 971_200, ref=True),
                      _r("VAE-fr1", 94, "10%(10×)", 10, "97,134", 97_134),
                  ), metric="fid", metric_text="FID", higher_is_better=False, decimals=1,
                  notes=(_TOTAL_RATES, _FID_FEATURES)),
}

# Table 1, left half: DeepCompress [11] as quoted by the paper (top-1 %, rate text, rate, params text).
DEEPCOMPRESSION = {
    "LeNet300-ref": (98.36, "100%(1×)", 1, "266K(float32)"),
    "LeNet300-v1": (98.42, "2.5%(40×)", 40, "21k(float6)"),
    "LeNet5-ref": (99.20, "100%(1×)", 1, "431K(float32)"),
    "LeNet5-v1": (99.26, "2.56%(39×)", 39, "34K(float6)"),
}


def notes_for(paper: PaperTable) -> list[str]:
    m = paper.metric_text
    notes = [
        f"Metric: {m}, measured on the model unpacked from its packed file: the float16 pack for rows the paper "
        "lists in float16 (Notes: fp16 pack), the float32 pack otherwise. Ours = mean ± sample std over n seeds.",
        "Kept weights ours: sum of the per-tensor kept counts of the run records (tensors[].kept, the FR mask "
        "boundaries k) over the regularized conv/linear weights. Biases and norm parameters are not counted there; "
        "they are in 'Other params ours'.",
        "Rate ours fp32 = dense weights / kept weights (each kept number one parameter). "
        "Rate ours fp16 = dense weights / (kept weights / 2): the paper's float16 convention, each float16 number "
        "counted as half a parameter (AlexNet-v4: 57,035,456 / (1,408 / 2) = 81,016×).",
        "Rate paper: as published; [fp16] marks rows whose parameter count the paper gives in float16 (it uses the "
        "fp16 convention there), [fp32] the others. Δ rate compares ours in the same convention as that row.",
        "Params: the paper's -ref rows count all parameters (weights, biases, norm parameters); its compressed rows "
        "count kept weights only. 'Params ours (paper's count)' follows the same rule. 266K/431K are rounded in "
        "the paper.",
        "Scale: full = the paper-size run (gpu: the same recipe on one GPU; release: a released model evaluated "
        "by frx); smoke = a run that checks the pipeline; any other name = a real run at a reduced scale (its "
        "scale file says what was cut); neither is compared with the paper. "
        "Rows without a record say 'not run'.",
        "Row labels: a plain label is the paper's transform (linear weights transformed as 2-D out x in, 'flat'); "
        "'(frx shape-aware)' is frx's shape-aware linear view (variant 'auto'), an extra row not in the paper.",
    ]
    notes.extend(paper.notes)
    return notes

