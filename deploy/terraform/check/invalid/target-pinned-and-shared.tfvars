# expect: pinned to one tunnel or shared, not both
shared_targets = [
  { name = "registry-db", address = "10.20.0.5" },
  { name = "cgw-a", address = "172.16.1.10" },
]
