"""The report glossary: what each figure of the run and comparison reports means and how to read
it, as ``{anchor: (title, explanation)}``. Wording only; the figures come from ``results.json``."""

from __future__ import annotations

GLOSSARY: dict[str, tuple[str, str]] = {
    "verdict": ("Verdict tiles",
                "Colours are a quick reading aid with the thresholds of the sign-off policy (the one this run was "
                "signed off with, else the shipped default): good when the figure's criterion passes on the point "
                "estimate, borderline in the criterion's warning band, a concern when it fails. Privacy: best "
                "membership-inference AUC (criterion mia_auc); fidelity: FID / real-floor FID (fid_vs_real_floor); "
                "anatomy: the worse of the plausible-image rate (plausible_rate) and the judge Dice as a fraction of "
                "the real ceiling (judge_dice_vs_ceiling). Grey: the figure is not available. The binding PASS / WARN "
                "/ FAIL decision is the sign-off (audit signoff RUN_DIR --policy POLICY.toml), which reads confidence "
                "bounds where the policy says so."),
    "metric_entry": ("Reading a figure",
                     "Each figure is a value with, where computed, a 95 % confidence interval in brackets and n, the "
                     "number of images or subjects behind it. Hover over a value for the exact method; the methods are "
                     "also listed under each table. Intervals are subject-level bootstraps unless the method says "
                     "otherwise: with few subjects they are wide, and a value inside a wide interval says little."),
    "unavailable": ("n/a (unavailable)",
                    "A figure that could not be computed is shown as n/a with the reason (numbered notes under the "
                    "table), never as 0. Typical reasons: too few subjects, an audit switched off, a generator without "
                    "the needed capability."),
    "attack": ("Membership-inference attack",
               "An attacker tries to tell whether a patient's images were in the generator's training set (members, "
               "the train split) or not (non-members: every patient the generator never trained on and whose masks "
               "did not condition the samples, normally the holdout and test splits; the set-up table lists them), "
               "using the synthetic images (black-box) or "
               "the trained generator itself (white-box, e.g. its loss on a candidate image). Each row names the "
               "attack; the description is under the table."),
    "attack_level": ("Image vs subject level",
                     "Image level scores each real image on its own. Subject level pools a patient's image scores "
                     "(max or mean) and asks whether the patient was a member: the unit that privacy protects, with "
                     "far fewer, hence noisier, cases."),
    "auc": ("ROC AUC",
            "Probability that the attack scores a random member above a random non-member. 0.5 = guessing, "
            "1 = members perfectly identified. Values below 0.5 are chance fluctuations (or a reversed score) and "
            "mean no leak. Read with the CI: with few subjects a high AUC can be noise."),
    "balanced_accuracy": ("Balanced accuracy",
                          "(TPR + TNR) / 2 at the best threshold, chosen on the same data, so optimistic. "
                          "0.5 = chance."),
    "tpr_at_fpr": ("TPR at low FPR",
                   "Share of members the attack finds when it may wrongly flag only 1 % (or 0.1 %) of non-members. "
                   "This is the regime that matters for privacy (Carlini et al. 2022): an attack with a modest AUC can "
                   "still expose a few patients with confidence. Needs at least 100 (1000) non-members; otherwise n/a. "
                   "TPR @ lowest FPR is read at the lowest FPR whose estimate rests on 10 flagged non-members "
                   "(10 / number of non-members, stated beside it): always there with 10 or more non-members. Compare "
                   "it with its FPR: a TPR well above the FPR (10x is the release policy's limit) singles patients "
                   "out. The log-log ROC panel shows the same regime."),
    "roc": ("ROC curve",
            "True positive rate (members found) against false positive rate (non-members wrongly flagged) over all "
            "thresholds of the attack score. The dotted diagonal is guessing. A curve hugging the diagonal means no "
            "measurable leak; a curve rising steeply at the left of the log-log panel means some patients are "
            "exposed with confidence."),
    "copy_rate": ("Copy rate",
                  "Share of synthetic images whose nearest training image is closer than the copy threshold. "
                  "The holdout copy rate applies the same test to real unseen images (about 1 % by construction): a "
                  "synthetic copy rate clearly above it means near-copies of training images. With few images one "
                  "copy moves the rate by several percent."),
    "copy_threshold": ("Copy threshold",
                       "The 1st percentile of holdout-to-train nearest distances: closer than this is closer than "
                       "almost any genuinely new real image gets to a training image."),
    "dcr_ratio": ("DCR ratio",
                  "Among synthetic images, the share whose nearest real image is a training rather than a holdout "
                  "image, adjusted for the sizes of the two sets. 0.5 = synthetic images are no closer to the "
                  "training data than to unseen patients (ideal); towards 1 = they sit near training images."),
    "nn_distance": ("Nearest-neighbour distance (DCR)",
                    "Distance from an image to its closest training image, in the named distance. The histogram "
                    "compares synthetic-to-train with holdout-to-train: a synthetic histogram shifted left of the "
                    "holdout one means the generator reproduces training images more closely than new patients "
                    "resemble them."),
    "epsilon_lb": ("Empirical epsilon lower bound",
                   "From the strongest attack's TPR / FPR (with Clopper-Pearson bounds), the smallest epsilon that any "
                   "differential-privacy guarantee could have given these results (Jagielski et al. 2020). If it "
                   "exceeds the claimed epsilon, the DP claim is violated (an accounting or implementation bug). A lower "
                   "bound of 0 does not prove privacy; it only means the attacks found no evidence against it."),
    "claimed_epsilon": ("Claimed epsilon",
                        "The (epsilon, delta) that DP-SGD accounting claims for the training run. Smaller epsilon = "
                        "stronger guarantee; n/a when the generator was trained without DP."),
    "dp_accounting": ("DP accounting",
                      "How the claimed epsilon was computed (accountant, noise multiplier, clipping norm, sampling rate, "
                      "steps, delta)."),
    "fid": ("FID (Frechet distance)",
            "Distance between Gaussians fitted to the features of the synthetic and the real test images "
            "(Heusel et al. 2017), here in the named feature space. Lower is better, 0 = identical statistics. Its "
            "absolute value depends on the feature space and on n, so read it only against the real floor."),
    "kid": ("KID (kernel distance)",
            "Unbiased squared MMD with a polynomial kernel in the same features (Binkowski et al. 2018); less biased "
            "than FID at small n. Lower is better; slightly negative values are sampling noise."),
    "kid_std": ("KID standard deviation", "Spread of KID over random subsets: its sampling noise."),
    "precision": ("Precision (realism)",
                  "Share of synthetic images inside the real images' k-nearest-neighbour balls (Naeem et al. 2020): "
                  "how many look like some real image. Higher is better; compare with the real floor."),
    "recall": ("Recall (diversity)",
               "Share of real images inside the synthetic images' neighbourhoods: how much of the real variety the "
               "generator covers. Low recall = mode collapse. Higher is better."),
    "density": ("Density",
                "Like precision but counts how many real neighbourhoods hold each synthetic image; about 1 for "
                "matching distributions, above 1 when samples crowd into typical regions."),
    "coverage": ("Coverage",
                 "Share of real images whose neighbourhood holds at least one synthetic image: a robust diversity "
                 "measure. Higher is better; compare with the real floor."),
    "real_floor": ("Real floor",
                   "The same metric between two disjoint sets of real subjects (holdout vs test) at the same n: what "
                   "a perfect generator would score given sampling noise and patient variability. A synthetic figure "
                   "close to the floor is as good as this n can show."),
    "fid_ratio": ("FID / real floor",
                  "FID(synthetic, test) / FID(holdout, test). 1 = synthetic images are as close to the test patients "
                  "as other real patients are; the default sign-off policy allows up to 3."),
    "feature_space": ("Feature space",
                      "Distribution metrics are computed in the judge segmentation network's features (trained on real "
                      "ACDC scans, so they encode cardiac MR appearance). Standard Inception features need ImageNet "
                      "weights that are not available here; numbers are therefore not comparable with published "
                      "Inception FIDs."),
    "paired": ("Paired metrics",
               "PSNR, SSIM and MS-SSIM between a generated image and its own reference: SDEdit outputs vs the real "
               "image they restyle, or autoencoder reconstructions vs their input. They measure how much structure "
               "is kept, not realism. Higher is better."),
    "psnr": ("PSNR", "Peak signal-to-noise ratio in dB between output and reference; higher = closer."),
    "ssim": ("SSIM", "Structural similarity (0 to 1) between output and reference; 1 = identical."),
    "ms_ssim": ("MS-SSIM", "Multi-scale SSIM (0 to 1): SSIM over several resolutions."),
    "dice": ("Dice (judge vs conditioning mask)",
             "Overlap 2|A and B| / (|A| + |B|) between the judge network's segmentation of a synthetic image and the "
             "mask it was conditioned on. 1 = the heart is exactly where it was asked to be. Compare with the real "
             "ceiling. Lenient on its own: mask-shaped cartoons can score well, so read it with fidelity."),
    "hd95": ("HD95",
             "95th-percentile Hausdorff distance in mm between the judge contour and the conditioning-mask contour: "
             "large boundary errors. Lower is better; undefined where a structure is missing in one of them."),
    "ceiling": ("Real ceiling",
                "The judge on real test images against their manual ground truth: the best agreement to expect, given "
                "the judge's own errors. A synthetic Dice near the ceiling is as good as the judge can tell."),
    "plausible_rate": ("Plausible-image rate",
                       "Share of images whose judge segmentation shows a heart and violates none of the anatomical "
                       "criteria (after Painchaud et al. 2019 / 2020). Compare with the real test images."),
    "plausibility": ("Plausibility criterion",
                     "Pass rate of one anatomical rule (holes, disconnected parts, LV enclosed by myocardium, "
                     "concavity, circularity, wall thickness, ...) among the images where it applies (n). A criterion "
                     "that real images pass but synthetic ones fail points at a specific anatomical defect."),
    "clinical": ("Clinical indices",
                 "LV end-diastolic / end-systolic volume and ejection fraction measured by the judge on whole "
                 "generated ED and ES stacks, against the values requested through the conditioning masks "
                 "(controllability). Cine sets: volumes by slice summation over every frame of whole generated "
                 "subjects, ED/ES = the frames of largest/smallest LV volume, against the requested EF/EDV/ESV; "
                 "their temporal coherence (frame-to-frame judge Dice) is under fidelity, temporal smoothness."),
    "pearson_r": ("Pearson r", "Correlation between measured and requested index across subjects; 1 = perfect control."),
    "mae": ("MAE", "Mean absolute difference between measured and requested index."),
    "bland_altman": ("Bland-Altman bias and limits of agreement",
                     "Bias = mean of (measured - requested); the 95 % limits of agreement (bias -/+ 1.96 sd) bound "
                     "where most single differences fall. The figures show measured vs requested and the "
                     "Bland-Altman plot."),
    "sdedit": ("SDEdit structure preservation",
               "A real reference image is noised to the given strength and denoised (restyled); the judge's Dice "
               "on the output vs the reference's mask shows whether the anatomy survives. Higher strength = more "
               "change, usually lower Dice."),
    "utility": ("Utility",
                "Whether a segmentation network trained on the synthetic images works on real scans, also from an "
                "unseen vendor (Dice / HD95 / ASSD per setting and vendor with CIs). Every setting that uses the "
                "generator is compared, paired by subject, with 'real' and with 'real+augmentation' (the same real "
                "images under strong conventional augmentation): synthetic data are worth sharing only if they beat "
                "what a few image transforms give for free. The real test scans are cut without their labels."),
    "dice_volume": ("Volume Dice (ACDC challenge)",
                    "Utility: the Dice of the ACDC challenge (Bernard et al. 2018). Per patient and cine frame the "
                    "overlap is pooled over all evaluated slices, then averaged over the frames (ED, ES) and patients. "
                    "Large mid-ventricular slices weigh more than small apical ones, so it is higher than the per-slice "
                    "'dice' beside it, which scores a missed apical structure 0. Published 2D U-Net figures on ACDC "
                    "(about 0.90) are of this kind."),
    "samples": ("Sample grid",
                "Synthetic images with the outline of the mask they were conditioned on (orange, solid) and of the "
                "judge's segmentation (sky blue, dashed). Outlines that agree = the heart is where it was asked to be."),
    "setup": ("Attack set-up",
              "Members are the train subjects' images, non-members the images of every subject the generator never "
              "trained on and whose masks did not condition the samples (normally the holdout and test splits: the "
              "notes name them); the reference split is population data the attacker may use. Counts bound how "
              "precise the attack figures can be, e.g. the lowest FPR is 10 / non-members."),
}
