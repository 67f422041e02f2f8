# Workers only call AWS APIs over HTTPS (SQS, SSM, CloudWatch, Auto Scaling, KMS).
# IMDS, the VPC DNS resolver and the time sync service are link-local and need no rule.
resource "aws_security_group" "instance" {
  count = var.create_security_group ? 1 : 0

  name        = var.use_name_prefix ? null : var.name
  name_prefix = var.use_name_prefix ? "${var.name}-" : null
  description = "sqs-poller ${var.name} workers: HTTPS egress only, no ingress"
  vpc_id      = var.vpc_id
  tags        = local.resource_tags["security_group"]

  egress {
    description = "HTTPS to AWS APIs (SQS, SSM, CloudWatch, KMS, Auto Scaling)"
    from_port   = 443
    to_port     = 443
    protocol    = "tcp"
    cidr_blocks = ["0.0.0.0/0"]
  }

  lifecycle {
    create_before_destroy = true
  }
}
