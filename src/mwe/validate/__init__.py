"""Human validation of datasets: sampling items for raters, the rating app, answer files and agreement
statistics."""
