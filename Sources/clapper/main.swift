print("clapper")
