# expect: must not be 0.0.0.0/0
http_reader_cidrs = ["0.0.0.0/0"]
