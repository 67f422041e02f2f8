# Kept apart from the build so `make test` can validate the rest with Debian's packer 1.6.6,
# which predates required_plugins. `packer init packer/` reads this file.
packer {
  required_version = ">= 1.10.0"

  required_plugins {
    amazon = {
      source  = "github.com/hashicorp/amazon"
      version = ">= 1.3.0"
    }
  }
}
