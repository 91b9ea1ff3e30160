# expect: must be 64 lower-case hex digits
package_sha256 = "d41d8cd98f00b204e9800998ecf8427e"
