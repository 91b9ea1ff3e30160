# expect: must be an s3://BUCKET/KEY or https:// URL of a .deb file
package_url = "http://artifacts.example.org/tunnelkeeper_0.1.0_amd64.deb"
