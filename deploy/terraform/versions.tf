terraform {
  # 1.9: validation rules that look at other variables (variables.tf checks that no target
  # address is both pinned and shared, and that the SNS inputs agree).
  required_version = ">= 1.9"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # 6.x: data.aws_region's `region` attribute (`name` is deprecated there).
      version = ">= 6.0, < 7.0"
    }
  }
}
