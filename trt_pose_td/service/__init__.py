"""The camera service behind ``trt-pose-td serve``: config, main loop, HTTP, sd_notify, stats."""
