# expect: tunnel names and tunnel outside IPs must each be unique
vpn_connections = [
  {
    id   = "vpn-0123456789abcdef0"
    name = "dc-primary"
    tunnels = [
      { name = "dc-a", outside_ip = "52.2.144.13", targets = ["172.16.1.10"] },
      { name = "dc-a", outside_ip = "52.2.144.14", targets = ["172.16.2.10"] },
    ]
  },
]
