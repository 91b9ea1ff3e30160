# expect: escalate_after must be a whole number of seconds, minutes or hours
escalate_after = "2d"
