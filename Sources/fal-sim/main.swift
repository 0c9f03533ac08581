print("fal-sim")
