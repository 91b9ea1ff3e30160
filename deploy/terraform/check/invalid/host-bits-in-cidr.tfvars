# expect: written with its network address
datacenter_cidrs = ["10.20.0.5/16"]
