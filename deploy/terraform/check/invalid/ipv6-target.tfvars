# expect: must be an IPv4 address such as 172.16.1.10
vpn_connections = [
  {
    id   = "vpn-0123456789abcdef0"
    name = "dc-primary"
    tunnels = [
      { name = "dc-primary-a", outside_ip = "52.2.144.13", targets = ["fd00::10"] },
      { name = "dc-primary-b", outside_ip = "52.2.144.14", targets = ["172.16.2.10"] },
    ]
  },
]
