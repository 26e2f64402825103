"""The shipped .hog specs, installed as package data (`hogwild_dsl.specs`); see hogwild_dsl.shipped."""
