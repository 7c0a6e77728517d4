import Pprof
print("demo")
