"""Measuring: FLIP/PSNR metrics, quality against native renders, speed benchmarks, the synthetic demo."""
